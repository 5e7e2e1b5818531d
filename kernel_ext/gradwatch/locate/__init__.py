"""From frames, code positions and cell history to `Location`s and user-facing names.

``source_map``: code positions and cell history to cell/line/column locations, and the
assignment in the cell history that created a value; ``naming``: the user's own names.
"""

from .naming import NamespaceIndex, Namer
from .source_map import Position, SourceMap, char_column, history_cell

__all__ = ["NamespaceIndex", "Namer", "Position", "SourceMap", "char_column", "history_cell"]
