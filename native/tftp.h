/*
 * TFTP on the wire (RFC 1350 section 5), for the C side of the transfer sockets. The TypeScript codec
 * (src/tftp/packet.ts) has the same numbers; these are the ones the C code reads and writes.
 */
#ifndef PLINTH_TFTP_H
#define PLINTH_TFTP_H

#define TFTP_OP_RRQ 1
#define TFTP_OP_WRQ 2
#define TFTP_OP_DATA 3
#define TFTP_OP_ACK 4
#define TFTP_OP_ERROR 5
#define TFTP_OP_OACK 6

/* ERROR 5 "Unknown transfer ID" (RFC 1350 section 4), whole: opcode, error code, message; the string literal
 * brings the final NUL. */
#define TFTP_ERROR_UNKNOWN_TID "\0\5\0\5Unknown transfer ID"

#endif
