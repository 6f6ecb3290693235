"""Research and user tools built on the API: benchmark, Table II/III ablations, the demo, dataset browsing, model info."""
