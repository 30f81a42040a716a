"""Diffuse scattering: planes, I_FF/I_SRO simulation, DSFU-Net, Warren–Cowley refinement (no Qt)."""
