"""One module per action, UI-free: they yield typed events that the runner screen and the
headless printer both render."""
