package wire

// EnvBrokerURL names the environment variable through which `cloister
// run --broker URL` (host.Config.Broker) tells the enclave where the key
// broker is. The host chooses it, so the enclave treats it as untrusted:
// it is only an address, and the broker met there must still prove the
// identity the app pins (enclave.BrokerConfig.Policy) with RA-TLS.
const EnvBrokerURL = "CLOISTER_BROKER_URL"
