"""Sweeps: a matrix of export cells (checkpoint × format × recipe × cache length), each converted,
verified, evaluated and benchmarked, recorded in the run store, gated on quality and ranked."""
