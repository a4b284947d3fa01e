"""The Dex4D simulated benchmark: six tasks, SR and TP, NovaFlow baselines (SPEC section 7)."""
