package tls12

import "strconv"

// Alert levels and descriptions (RFC 5246 section 7.2, RFC 5746, RFC 7301).
const (
	alertLevelWarning = 1
	alertLevelFatal   = 2

	alertCloseNotify           uint8 = 0
	alertUnexpectedMessage     uint8 = 10
	alertBadRecordMAC          uint8 = 20
	alertRecordOverflow        uint8 = 22
	alertHandshakeFailure      uint8 = 40
	alertIllegalParameter      uint8 = 47
	alertDecodeError           uint8 = 50
	alertDecryptError          uint8 = 51
	alertProtocolVersion       uint8 = 70
	alertInternalError         uint8 = 80
	alertInappropriateFallback uint8 = 86
	alertUserCanceled          uint8 = 90
	alertNoRenegotiation       uint8 = 100
	alertNoApplicationProtocol uint8 = 120
)

var alertNames = map[uint8]string{
	alertCloseNotify:           "close_notify",
	alertUnexpectedMessage:     "unexpected_message",
	alertBadRecordMAC:          "bad_record_mac",
	alertRecordOverflow:        "record_overflow",
	alertHandshakeFailure:      "handshake_failure",
	alertIllegalParameter:      "illegal_parameter",
	alertDecodeError:           "decode_error",
	alertDecryptError:          "decrypt_error",
	alertProtocolVersion:       "protocol_version",
	alertInternalError:         "internal_error",
	alertInappropriateFallback: "inappropriate_fallback",
	alertUserCanceled:          "user_canceled",
	alertNoRenegotiation:       "no_renegotiation",
	alertNoApplicationProtocol: "no_application_protocol",
}

func alertName(d uint8) string {
	if n, ok := alertNames[d]; ok {
		return n
	}
	return "alert(" + strconv.Itoa(int(d)) + ")"
}
