"""One file per training objective; each defines NAME and KIND (lsap.methods.kinds.ObjectiveKind)."""
