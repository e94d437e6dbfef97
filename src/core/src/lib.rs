//! peaqos_core (skeleton)
