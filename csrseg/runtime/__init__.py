"""Where the code runs: the CPU's abilities, the device and the precision to compute in."""
