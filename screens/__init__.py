"""Everything Textual lives here; console/ and actions/ never import it."""
