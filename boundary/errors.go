package boundary

import (
	"errors"
	"fmt"
)

// Sentinel errors, for callers that branch on the cause (errors.Is). This
// package never returns one bare: it wraps it with %w in a message of the
// form "boundary: what failed: cause: detail", which is why the sentinels'
// own text has no prefix.
var (
	// ErrClosed: the region, client or server was closed.
	ErrClosed = errors.New("closed")
	// ErrConfig: a Config is invalid or does not match the region.
	ErrConfig = errors.New("bad config")
	// ErrUnknownCall: the call id is not declared in the Table in use.
	ErrUnknownCall = errors.New("unknown call")
	// ErrRequestTooLarge: a request exceeds its call's declared bound.
	ErrRequestTooLarge = errors.New("request too large")
	// ErrResponseTooLarge: a response exceeds its call's declared bound.
	ErrResponseTooLarge = errors.New("response too large")
	// ErrShortBuffer: the caller's response buffer is smaller than the
	// (well-formed) response.
	ErrShortBuffer = errors.New("response buffer too small")
	// ErrBadIndex: the other side published an inconsistent head or tail
	// (misaligned, beyond the capacity, or going backwards).
	ErrBadIndex = errors.New("bad ring index")
	// ErrMalformedFrame: a frame's header is inconsistent with the ring or
	// the limits; the ring is resynchronised past it.
	ErrMalformedFrame = errors.New("malformed frame")
	// ErrUnknownID: a response carries a correlation id never issued.
	ErrUnknownID = errors.New("unknown correlation id")
	// ErrDuplicateID: a response carries a correlation id already answered.
	ErrDuplicateID = errors.New("duplicate correlation id")
	// ErrCallMismatch: a response names a different call than its request.
	ErrCallMismatch = errors.New("response for a different call")
	// ErrMalformedError: an error response's payload is malformed.
	ErrMalformedError = errors.New("malformed error response")
	// ErrRegionFault: touching an unsealed (file) region faulted, because
	// the host truncated it; the client stays failed.
	ErrRegionFault = errors.New("shared region fault (truncated by the host?)")
	// ErrRemote: the host answered with an error response; see RemoteError.
	ErrRemote = errors.New("remote error")

	// ErrWouldBlock is a typed status, not a failure of this package: a
	// handler returns an error wrapping it (errors.Is) to answer
	// CodeWouldBlock, "the call cannot proceed now; retry when the handle
	// is ready". The caller sees a RemoteError that errors.Is it. The
	// message text plays no part in the status.
	ErrWouldBlock = errors.New("would block")
	// ErrNotFound is a typed status like ErrWouldBlock: a handler returns
	// an error wrapping it to answer CodeNotFound ("no such record").
	ErrNotFound = errors.New("not found")
)

// Code is the error code carried by an error response. Values cross the
// boundary: Do NOT renumber.
type Code uint32

// Error codes of error responses.
const (
	// CodeUnknownCall: the server's table does not list the call.
	CodeUnknownCall Code = 1
	// CodeBadRequest: the request exceeds the call's bound.
	CodeBadRequest Code = 2
	// CodeHandler: the handler returned an error; the message is its text.
	CodeHandler Code = 3
	// CodeResponseTooLarge: the handler produced more than the call's bound.
	CodeResponseTooLarge Code = 4
	// CodeWouldBlock: a status, not a failure: the call cannot proceed now
	// (the handler's error wraps ErrWouldBlock).
	CodeWouldBlock Code = 5
	// CodeNotFound: a status: the call's subject does not exist (the
	// handler's error wraps ErrNotFound).
	CodeNotFound Code = 6
)

// codeOf is the code a handler's error answers: its typed status if it
// wraps one, CodeHandler otherwise.
func codeOf(err error) Code {
	switch {
	case errors.Is(err, ErrWouldBlock):
		return CodeWouldBlock
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	}
	return CodeHandler
}

// String names the code for messages.
func (c Code) String() string {
	switch c {
	case CodeUnknownCall:
		return "unknown call"
	case CodeBadRequest:
		return "bad request"
	case CodeHandler:
		return "handler error"
	case CodeResponseTooLarge:
		return "response too large"
	case CodeWouldBlock:
		return "would block"
	case CodeNotFound:
		return "not found"
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// RemoteError is an error response from the other side. Its Message comes
// from the host and is untrusted text (bounded by MaxErrorMessage).
// errors.Is(err, ErrRemote) holds, and so do errors.Is(err, ErrUnknownCall)
// for CodeUnknownCall, ErrWouldBlock for CodeWouldBlock and ErrNotFound for
// CodeNotFound: the code decides, never the message.
type RemoteError struct {
	Call    uint32
	Code    Code
	Message string
}

// Error formats the error; the host's message is quoted, as untrusted text.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("boundary: call %#x failed on the other side: %v: %q", e.Call, e.Code, e.Message)
}

// Is matches ErrRemote, and the sentinel of the typed codes, so callers
// can branch without a type assertion.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrRemote:
		return true
	case ErrUnknownCall:
		return e.Code == CodeUnknownCall
	case ErrWouldBlock:
		return e.Code == CodeWouldBlock
	case ErrNotFound:
		return e.Code == CodeNotFound
	}
	return false
}
