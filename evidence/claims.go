package evidence

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// TEE kinds as they appear in Claims.TEE. The sim kinds are reported only for
// evidence whose chain ends at a root the caller named explicitly (the
// simulator's); evidence can never claim a hardware kind that way.
const (
	TEESGX    = "sgx"
	TEETDX    = "tdx"
	TEESNP    = "sev-snp"
	TEESimSGX = "sim-sgx"
	TEESimTDX = "sim-tdx"
	TEESimSNP = "sim-snp"
)

// TCB status values of Claims.TCBStatus.
const (
	StatusUpToDate                          = "UpToDate"
	StatusSWHardeningNeeded                 = "SWHardeningNeeded"
	StatusConfigurationNeeded               = "ConfigurationNeeded"
	StatusConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	StatusOutOfDate                         = "OutOfDate"
	StatusOutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	StatusRevoked                           = "Revoked"
	// StatusTDRelaunchAdvised and StatusTDRelaunchAdvisedConfigurationNeeded
	// are Intel's TD relaunch statuses (TDX 1.5): the TD's module is out of
	// date and relaunching the TD would bring it to the newest level.
	StatusTDRelaunchAdvised                    = "TDRelaunchAdvised"
	StatusTDRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
	// StatusNotEvaluated means signatures and chains were checked but no
	// collateral was used to evaluate the TCB. It never passes a policy
	// that asks for a status.
	StatusNotEvaluated = "NotEvaluated"
)

// HexBytes is a byte string that marshals to lowercase hex in JSON.
type HexBytes []byte

// MarshalJSON encodes b as a hex string.
func (b HexBytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(hex.EncodeToString(b))
}

// UnmarshalJSON decodes a hex string.
func (b *HexBytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("evidence: hex field: %w", err)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("evidence: hex field: %w", err)
	}
	*b = v
	return nil
}

// String returns the lowercase hex of b.
func (b HexBytes) String() string { return hex.EncodeToString(b) }

// Claims is what verified evidence says. It exists only as the output of
// Verify: every field was read from bytes whose signatures were checked.
// The JSON field names are a contract (DESIGN.md "Common claims"); the
// per-TEE parts are embedded pointers, so only the part for Claims.TEE is
// printed.
type Claims struct {
	// TEE is one of the TEE* constants.
	TEE string `json:"tee"`
	// ReportData is the 64 bytes the evidence binds (caller-chosen).
	ReportData HexBytes `json:"report_data"`
	// Debug is true when the enclave, TD or guest can be debugged by the host.
	Debug bool `json:"debug"`
	// TCBStatus is one of the Status* constants.
	TCBStatus string `json:"tcb_status"`
	// AdvisoryIDs lists the Intel security advisories of the matched TCB
	// levels (platform, QE, TDX module), sorted and without duplicates.
	AdvisoryIDs []string `json:"advisory_ids"`
	// Warnings lists checks that the caller chose to skip (for example
	// revocation with AllowMissingCRL), so a result never hides them.
	Warnings []string `json:"warnings,omitempty"`
	// EventLog is set by ReplayEventLog (TDX): the replayed events and the
	// apps measured into RTMR3.
	EventLog *EventLogClaims `json:"event_log,omitempty"`

	*DCAPClaims
	*SGXClaims
	*TDXClaims
	*SNPClaims
}

// DCAPClaims are common to SGX and TDX quotes: the platform facts read from
// the PCK certificate and the quoting enclave.
type DCAPClaims struct {
	FMSPC  HexBytes `json:"fmspc"`
	PCESVN uint16   `json:"pce_svn"`
	QESVN  uint16   `json:"qe_svn"`
	// TCBDate is the tcbDate of the matched platform TCB level (RFC 3339),
	// empty when the TCB was not evaluated.
	TCBDate string `json:"tcb_date,omitempty"`
	// SGXType is the PCK certificate's SGX type: "standard", "scalable" or
	// "scalable_with_integrity".
	SGXType string `json:"sgx_type"`
	// PlatformInstanceID and the configuration flags are stated by PCK
	// certificates of the PCK Platform CA only; absent otherwise.
	PlatformInstanceID HexBytes `json:"platform_instance_id,omitempty"`
	DynamicPlatform    *bool    `json:"dynamic_platform,omitempty"`
	CachedKeys         *bool    `json:"cached_keys,omitempty"`
	SMTEnabled         *bool    `json:"smt_enabled,omitempty"`
}

// SGXClaims describe an SGX enclave.
type SGXClaims struct {
	MRENCLAVE  HexBytes `json:"mrenclave"`
	MRSIGNER   HexBytes `json:"mrsigner"`
	ISVProdID  uint16   `json:"isv_prod_id"`
	ISVSVN     uint16   `json:"isv_svn"`
	Attributes HexBytes `json:"attributes"`
	MiscSelect uint32   `json:"misc_select"`

	// SGXKSSClaims is nil unless the enclave uses Key Separation and
	// Sharing; its fields are then printed inline, next to the others.
	*SGXKSSClaims
}

// SGXKSSClaims are the report fields of the SGX Key Separation and Sharing
// (KSS) feature. An enclave without KSS has them all zero, so they are
// reported only when the KSS attribute is set or one of them is not zero:
// MAA likewise issues its config-id claims only for KSS enclaves, and
// printing zeros would suggest a configuration that was never made.
type SGXKSSClaims struct {
	// ConfigID is CONFIGID, 64 bytes the host sets when it creates the
	// enclave (MAA binds initTimeData to its first 32 bytes).
	ConfigID HexBytes `json:"config_id"`
	// ConfigSVN is CONFIGSVN, the security version of that configuration.
	ConfigSVN uint16 `json:"config_svn"`
	// ISVExtProdID is ISVEXTPRODID, the 16-byte extended product ID.
	ISVExtProdID HexBytes `json:"isv_ext_prod_id"`
	// ISVFamilyID is ISVFAMILYID, the 16-byte product family ID.
	ISVFamilyID HexBytes `json:"isv_family_id"`
}

// TDXClaims describe a TDX trust domain.
type TDXClaims struct {
	MRTD          HexBytes `json:"mrtd"`
	RTMR0         HexBytes `json:"rtmr0"`
	RTMR1         HexBytes `json:"rtmr1"`
	RTMR2         HexBytes `json:"rtmr2"`
	RTMR3         HexBytes `json:"rtmr3"`
	MRSEAM        HexBytes `json:"mr_seam"`
	MRConfigID    HexBytes `json:"mr_config_id"`
	MROwner       HexBytes `json:"mr_owner"`
	MROwnerConfig HexBytes `json:"mr_owner_config"`
	TDAttributes  HexBytes `json:"td_attributes"`
	XFAM          HexBytes `json:"xfam"`
	TEETCBSVN     HexBytes `json:"tee_tcb_svn"`
	// MRServiceTD is present for TDX 1.5 bodies (quote v5, body type 3).
	MRServiceTD HexBytes `json:"mr_service_td,omitempty"`
	// TEETCBSVN2 is a TDX 1.5 body's TEE_TCB_SVN2: the TCB the TD would
	// run on if relaunched.
	TEETCBSVN2 HexBytes `json:"tee_tcb_svn2,omitempty"`
	// RelaunchAdvised is true when Intel's TD relaunch rule applies (the
	// status is then one of the TDRelaunchAdvised ones).
	RelaunchAdvised bool `json:"tdx_relaunch_advised,omitempty"`
}

// SNPClaims describe an AMD SEV-SNP guest.
type SNPClaims struct {
	Measurement     HexBytes `json:"measurement"`
	HostData        HexBytes `json:"host_data"`
	IDKeyDigest     HexBytes `json:"id_key_digest"`
	AuthorKeyDigest HexBytes `json:"author_key_digest"`
	ReportID        HexBytes `json:"report_id"`
	Policy          uint64   `json:"policy"`
	VMPL            uint32   `json:"vmpl"`
	ChipID          HexBytes `json:"chip_id"`
	Product         string   `json:"product"`
	GuestSVN        uint32   `json:"guest_svn"`
	// ReportedTCB is the TCB version the VCEK was certified for.
	ReportedTCB uint64 `json:"reported_tcb"`
	// ReportedSPL is ReportedTCB split into its security patch levels.
	ReportedSPL SNPTCB `json:"reported_tcb_spl"`
	// LaunchTCB is the TCB version the guest was launched at (a migrated
	// guest keeps the one of its first host).
	LaunchTCB uint64 `json:"launch_tcb"`
	// LaunchSPL is LaunchTCB split into its security patch levels.
	LaunchSPL SNPTCB `json:"launch_tcb_spl"`
	// CurrentTCB is the TCB version of the firmware running now.
	CurrentTCB uint64 `json:"current_tcb"`
	// CommittedTCB is the TCB version the firmware cannot be rolled back
	// below; lower than CurrentTCB, the running firmware is a provisional
	// update the host can still undo.
	CommittedTCB uint64 `json:"committed_tcb"`
	// Signer names the key that signed the report: "vcek" (specific to
	// the chip and its TCB) or "vlek" (a cloud provider's key, loaded by
	// the host and certified by AMD for that provider).
	Signer string `json:"snp_signer"`
}

// Values of SNPClaims.Signer.
const (
	SNPSignerVCEK = "vcek"
	SNPSignerVLEK = "vlek"
)

// SNPTCB holds the security patch levels (SPLs) of an SEV-SNP TCB_VERSION
// that AMD certifies in a VCEK (blSPL, teeSPL, snpSPL, ucodeSPL), in the
// Milan/Genoa layout (Turin evidence is refused: evidence/snp).
type SNPTCB struct {
	BootLoader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}
