//! PEFT interop (see export/import functions).
