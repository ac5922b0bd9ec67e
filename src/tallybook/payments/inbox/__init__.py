"""The inbox of provider events: stored once by event id on receipt (``store``), processed by
the worker in their own transactions (``processor``), each type by its handler
(``handlers``)."""
