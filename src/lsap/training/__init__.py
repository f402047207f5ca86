"""The one training loop of every method, the run plan (steps, batch), the budget record
(what the matched FLOPs buy a method), resume and preemption."""
