"""The tools that reproduce and measure the paper rather than serve a user's data: the speed benchmark
(Table I's FPS and every runtime side by side), the Table II/III ablations with their statistics and
diagnostics, and the built-in demo. They stand on the API's verbs and on ``tools/`` (model info)."""
