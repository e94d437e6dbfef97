//! peaqos_stream (skeleton)
