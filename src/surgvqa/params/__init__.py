"""Typed params.yaml sections, one module per section, so a stage's code depends only on the sections it reads.

Keep this file free of imports: importing any section module runs it, and every stage would then depend on
every section (DVC tracks a stage's code file by file).
"""
