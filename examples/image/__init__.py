"""An image job whose PNG result opens in a browser."""
