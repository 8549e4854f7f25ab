package boundary

// pause executes one PAUSE instruction: the spin-wait hint that lets the
// sibling hyperthread run and avoids the memory-order flush when the loop
// exits.
//
//go:noescape
func pause()
