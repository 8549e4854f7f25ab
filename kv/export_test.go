package kv

// RecordKeyForTest returns the host key of name's record, which only the
// enclave can compute (the MAC key is in the sealed state).
func (s *Store) RecordKeyForTest(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(recordKey(s.loc, ridFor(&s.core.st.macKey, name)))
}

// StateKeyForTest returns the host key of the store's state record.
func StateKeyForTest(name string) string { return string(stateKey(locatorFor(name))) }
