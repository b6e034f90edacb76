"""File safety: atomic writes, the one-run-per-folder lock, JSON reading, safe output paths."""
