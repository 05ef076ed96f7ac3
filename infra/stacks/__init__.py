"""The three stacks: pipeline, API, EC2 fallback."""
