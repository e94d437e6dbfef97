//! peaqos_chain (skeleton)
