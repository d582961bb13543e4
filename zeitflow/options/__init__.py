"""Options models, one module per stage; ``zeitflow.config`` re-exports them."""
