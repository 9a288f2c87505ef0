/* validate.h -- validators of the government identifiers tongban carries:
 * citizen ID (GB 11643), unified social credit code (GB 32100-2015),
 * electronic licence identifier (GB/T 36904), administrative division code,
 * dates and service item codes; and the check characters of the first three.
 *
 * Every validator returns TB_OK (and, if why is non-NULL, sets why to "")
 * or TB_ERR_INVALID with why (if non-NULL and whylen > 0) set to one line
 * saying what is wrong, e.g. "citizen ID: check character is 5, expected X".
 * The input may be NULL (invalid). They keep no state, allocate nothing and
 * are safe to call from any thread.
 */
#ifndef TONGBAN_VALIDATE_H
#define TONGBAN_VALIDATE_H

#include <stddef.h>

#include <tongban/tongban.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Citizen ID, GB 11643: 18 characters = 6-digit area code whose first two
 * digits are a provincial-level prefix (see tb_validate_region) + birth date
 * YYYYMMDD (a real date, 1900-01-01 .. today in UTC+8) + 3-digit sequence
 * + ISO 7064 MOD 11-2 check character (0-9 or uppercase X; a lowercase x is
 * refused with a message saying so). */
TB_EXPORT tb_err_t tb_validate_citizen_id(const char *s, char *why, size_t whylen);

/* Unified social credit code, GB 32100-2015: 18 characters of
 * 0123456789ABCDEFGHJKLMNPQRTUWXY (no I O S V Z, uppercase only);
 * characters 3-8 (the area code) are digits; MOD 31 check character. */
TB_EXPORT tb_err_t tb_validate_uscc(const char *s, char *why, size_t whylen);

/* Electronic licence identifier, GB/T 36904:
 * 1.2.156.3005.2.<type code>.<issuing authority USCC>.<serial>.<version>.<check>
 * type code 1..32 of [0-9A-Z]; issuing authority a valid USCC; serial
 * 1..32 of [0-9A-Za-z]; version 3 digits; check character [0-9A-Z]
 * (ISO 7064 MOD 37,36, see tb_licence_id_check_char). */
TB_EXPORT tb_err_t tb_validate_licence_id(const char *s, char *why, size_t whylen);

/* Administrative division code: 6 digits whose first two are one of the 32
 * provincial-level prefixes (11..15, 21..23, 31..37, 41..46, 50..54, 61..65,
 * and 66 for the Xinjiang Production and Construction Corps). */
TB_EXPORT tb_err_t tb_validate_region(const char *s, char *why, size_t whylen);

/* Date YYYY-MM-DD: a real calendar date (Gregorian leap years), year
 * 1900..2199. */
TB_EXPORT tb_err_t tb_validate_date(const char *s, char *why, size_t whylen);

/* Service item code (GB/T 39554.1): 1..50 characters of [0-9A-Za-z] and '-'. */
TB_EXPORT tb_err_t tb_validate_item_code(const char *s, char *why, size_t whylen);

/* Holder code by its type: "111" -> tb_validate_citizen_id, "001" ->
 * tb_validate_uscc; any other type (or NULL) is refused. */
TB_EXPORT tb_err_t tb_validate_holder(const char *code_type, const char *code,
                                      char *why, size_t whylen);

/* Check characters, for issuing new identifiers and for tests. Each returns
 * the check character, or 0 if the input is malformed (NULL included). */

/* first17: the first 17 characters (all digits) of a citizen ID; anything
 * after them is ignored, so a whole ID may be passed. Returns '0'..'9' or 'X'. */
TB_EXPORT char tb_citizen_id_check_char(const char *first17);

/* first17: the first 17 characters of a USCC (USCC alphabet, characters 3-8
 * digits); anything after them is ignored. Returns a USCC alphabet character. */
TB_EXPORT char tb_uscc_check_char(const char *first17);

/* id_without_check: the whole identifier before its final ".<check>", i.e.
 * "1.2.156.3005.2.<type>.<issuer>.<serial>.<version>", each field of the
 * right length and alphabet (the issuer's own check character is not
 * verified here; tb_validate_licence_id does). Returns '0'..'9' or 'A'..'Z'. */
TB_EXPORT char tb_licence_id_check_char(const char *id_without_check);

#ifdef __cplusplus
}
#endif
#endif
