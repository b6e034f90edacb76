"""ARC data: tasks, their loaders, augmentations, the token encoding, views, generated puzzles."""
