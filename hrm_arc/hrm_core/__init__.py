"""HRM model core: config, model, losses, sparse puzzle embeddings, optimizers and the trainer.

Knows token ids and puzzle ids only; ARC grids and JSON live elsewhere. Import from the
submodules (`hrm_core.model`, `hrm_core.trainer`, ...); `hrm_core.batch` needs no torch.
"""
