"""`python -m hrm_arc.cli`, as torchrun starts each rank."""

from . import main

main()
