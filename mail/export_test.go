package mail

// DialTo makes s dial addr instead of its URL's host and port, so that a
// test can reach a loopback relay under a name that is not loopback.
func DialTo(s *SMTP, addr string) { s.dialTo = addr }
