"""Training: exact batch layouts from rollout records (the PPO learner builds on these)."""
