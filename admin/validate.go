package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The admin API's value checks, shared by the handler and by other front
// ends (the web console) so a value is refused the same way everywhere.

// costMsg is the refusal of a connector cost outside 1–100 (R9).
const costMsg = "must be an integer 1–100"

// ParseStoreMinAge checks a store_min_age value: a Go duration >= 0 (R6).
// A refusal is a *FieldError naming store_min_age.
func ParseStoreMinAge(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		return 0, &FieldError{Field: "store_min_age", Msg: fmt.Sprintf("%q is not a duration >= 0 (such as 24h or 90m)", s)}
	}
	return d, nil
}

// ParseCost checks a connector cost: an integer 1–100 (R9). A refusal is
// a *FieldError naming cost.
func ParseCost(s string) (int, error) {
	cost, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || cost < 1 || cost > 100 {
		return 0, &FieldError{Field: "cost", Msg: costMsg}
	}
	return int(cost), nil
}
