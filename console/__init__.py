"""opsconsole core: configuration, live model, actions runner.  Never imports Textual (see DESIGN.md)."""
