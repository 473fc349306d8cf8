"""Route tables of the web console, one module per page family."""
