"""ARC's ten colours, as every ARC viewer draws them (the terminal's `show` and the HTML report)."""

from __future__ import annotations

ARC_COLOURS = (
    "#000000",  # 0 black
    "#0074D9",  # 1 blue
    "#FF4136",  # 2 red
    "#2ECC40",  # 3 green
    "#FFDC00",  # 4 yellow
    "#AAAAAA",  # 5 grey
    "#F012BE",  # 6 magenta
    "#FF851B",  # 7 orange
    "#7FDBFF",  # 8 sky blue
    "#870C25",  # 9 maroon
)


def rgb(colour: str) -> tuple[int, int, int]:
    """'#FF4136' -> (255, 65, 54)."""
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
