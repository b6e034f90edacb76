"""hrm-arc: evaluate Hierarchical Reasoning Models on ARC with two-stage test-time adaptation."""

__version__ = "0.1.0"
