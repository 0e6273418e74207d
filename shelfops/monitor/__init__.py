"""⑦ monitor: drift over traffic windows, scheduled consistency checks, retraining triggers."""
