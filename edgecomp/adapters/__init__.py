"""Model-family knowledge: how to call a family's model so that it exports with static shapes."""
