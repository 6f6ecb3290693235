"""The user's tools around the verbs: dataset browsing, model info, the synthetic set, annotation conversion."""
