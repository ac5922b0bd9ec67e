"""Pure rating: quantities x prices -> priced lines. No I/O."""
