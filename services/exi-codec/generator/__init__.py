"""Generator of the EXI grammar tables (run: python -m generator from services/exi-codec)."""
