"""One file per data selection; each defines NAME and KIND (lsap.methods.kinds.DataKind)."""
