package enclave

// NewTestEnv exposes newTestEnv to the external tests (kv over the real
// host storage service).
var NewTestEnv = newTestEnv
