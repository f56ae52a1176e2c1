"""IPVS schedulers, each deciding as the Linux kernel's ip_vs_<name>.c does."""
