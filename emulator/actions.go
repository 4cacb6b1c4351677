package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

var serviceActions = []string{"start", "stop", "reboot", "reinstall", "suspend", "unsuspend", "terminate"}

// slowActions touch the machine and take Lifecycle.ActionDelay; the others
// change the service's account state at once.
var slowActions = []string{"start", "stop", "reboot", "reinstall"}

type actionRequest struct {
	Action *string `json:"action"`
	OS     *string `json:"os"`
}

// action is one service action, pending until it completes.
type action struct {
	id          string
	name        string
	serviceID   int64
	os          *string
	status      string // pending, completed
	requestedAt time.Time
	completedAt time.Time
}

// actionView renders the answer to POST .../actions and the data of
// service.action_completed; e.mu must be held.
func (e *Emulator) actionView(a *action, s *service) map[string]any {
	var done any
	if a.status == "completed" {
		done = rfc3339(a.completedAt)
	}
	return map[string]any{
		"id": a.id, "action": a.name, "status": a.status, "service_id": a.serviceID,
		"requested_at": rfc3339(a.requestedAt), "completed_at": done, "service": e.serviceView(s),
	}
}

func parseAction(body []byte) (*actionRequest, *apiError) {
	var req actionRequest
	if ae := decodeStrict(body, &req); ae != nil {
		return nil, ae
	}
	switch {
	case req.Action == nil:
		return nil, validationError("action", "required")
	case !slices.Contains(serviceActions, *req.Action):
		return nil, validationError("action", "must be one of "+strings.Join(serviceActions, ", "))
	case req.OS != nil && *req.Action != "reinstall":
		return nil, validationError("os", "only allowed with action reinstall")
	case req.OS != nil && !slices.Contains(osOption.Values, *req.OS):
		return nil, validationError("os", "must be one of "+strings.Join(osOption.Values, ", "))
	}
	return &req, nil
}

// handleAction checks the action against the service's state now and
// runs it: a slow action is answered 202 pending unless the lifecycle
// completes it inside the request, any other is answered 200 completed.
func (e *Emulator) handleAction(c *call) *response {
	req, ae := parseAction(c.body)
	if ae != nil {
		return c.fail(ae)
	}
	e.mu.Lock()
	s := e.ownService(c)
	if s == nil {
		e.mu.Unlock()
		return c.fail(notFound("No such service."))
	}
	if msg := allowed(s, *req.Action); msg != "" {
		e.mu.Unlock()
		return c.fail(validationError("action", msg))
	}
	a := &action{id: "act_" + newULID(e.now()), name: *req.Action, serviceID: s.id, os: req.OS,
		status: "pending", requestedAt: c.serverNow}
	slow := slices.Contains(slowActions, a.name)
	if slow {
		s.action = a // blocks other actions until it completes
	}
	epoch := e.epoch
	e.mu.Unlock()

	if slow {
		e.life.later(actionDelay, func() { e.completeAction(epoch, a) })
	} else {
		e.completeAction(epoch, a)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	status := http.StatusOK
	if a.status != "completed" {
		status = http.StatusAccepted
	}
	return jsonResponse(status, e.actionView(a, s))
}

// completeAction applies a to its service and sends
// service.action_completed. It does nothing after a Reset.
func (e *Emulator) completeAction(epoch int64, a *action) {
	e.mu.Lock()
	s := e.services[a.serviceID]
	if e.epoch != epoch || s == nil || a.status != "pending" {
		e.mu.Unlock()
		return
	}
	if s.action == a {
		s.action = nil
	}
	now := e.serverNow()
	apply(s, a.name, a.os)
	a.status, a.completedAt, s.updatedAt = "completed", now, now
	view := e.actionView(a, s)
	urls := e.webhookURLsLocked(s.account)
	e.mu.Unlock()
	e.sendEvents(urls, now, []event{{"service.action_completed", view}})
}

// allowed returns "" when action may run on s now, or why not.
func allowed(s *service, action string) string {
	if s.status == "terminated" {
		return "the service is terminated"
	}
	if s.action != nil {
		return fmt.Sprintf("the action %s (%s) is still running; wait until it completes", s.action.name, s.action.id)
	}
	switch action {
	case "start", "stop", "reboot", "reinstall", "suspend":
		if s.status != "active" {
			return fmt.Sprintf("cannot %s a %s service", action, s.status)
		}
	}
	switch action {
	case "reboot":
		if s.power != "running" {
			return "cannot reboot a stopped service; start it"
		}
	case "unsuspend":
		if s.status != "suspended" {
			return "the service is not suspended"
		}
	}
	return ""
}

// apply changes s as action does; allowed has approved it.
func apply(s *service, action string, osName *string) {
	switch action {
	case "start", "reboot":
		s.power = "running"
	case "stop":
		s.power = "stopped"
	case "reinstall":
		if osName != nil {
			s.os = *osName
		}
		s.password = randomString(20, alphanumeric)
		s.power = "running"
	case "suspend":
		s.status, s.power = "suspended", "stopped"
	case "unsuspend":
		s.status, s.power = "active", "running"
	case "terminate":
		s.status, s.power = "terminated", "stopped"
	}
}
