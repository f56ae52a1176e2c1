"""Real-server probes in the manner of Piranha's nanny; they report, the director applies."""
