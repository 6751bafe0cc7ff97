"""Pure array functions shared by tasks and classic methods (boxes, integral images, cost volumes, ...).

Nothing here imports the rest of mlcv; import the submodules directly
(``from mlcv.ops import boxes``).
"""
