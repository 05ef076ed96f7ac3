"""Lambda entry points: thin handlers that parse an event, call the core library, map the result."""
