-- callvet schema made by create_all at commit a4ca1a1 (the release before migrations; 74965f2^)
-- dialect postgresql; 21 tables; generated from that commit's table modules

CREATE TABLE api_keys (
	id SERIAL NOT NULL, 
	key_id VARCHAR(32) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	label VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id), 
	UNIQUE (key_id)
);

CREATE TABLE audit_log (
	id SERIAL NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	action VARCHAR(100) NOT NULL, 
	target_type VARCHAR(64) NOT NULL, 
	target_id VARCHAR(100) NOT NULL, 
	reason TEXT NOT NULL, 
	details JSON, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_audit_at ON audit_log (at);
CREATE INDEX ix_audit_target ON audit_log (target_type, target_id);

CREATE TABLE blacklist_identities (
	id SERIAL NOT NULL, 
	label VARCHAR(200) NOT NULL, 
	notes TEXT NOT NULL, 
	created_by VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE blacklist_state (
	id SERIAL NOT NULL, 
	generation INTEGER NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE calls (
	id VARCHAR(32) NOT NULL, 
	protocol VARCHAR(16) NOT NULL, 
	stream_id VARCHAR(100) NOT NULL, 
	call_sid VARCHAR(100) NOT NULL, 
	application_id VARCHAR(100), 
	language VARCHAR(32), 
	params JSON, 
	actor VARCHAR(200) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE, 
	ended_at TIMESTAMP WITH TIME ZONE, 
	end_reason TEXT, 
	close_code INTEGER, 
	audio_s FLOAT NOT NULL, 
	net_speech_s FLOAT NOT NULL, 
	alarm BOOLEAN NOT NULL, 
	alarm_ever BOOLEAN NOT NULL, 
	verdicts INTEGER NOT NULL, 
	errors INTEGER NOT NULL, 
	stats JSON, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_calls_alarm_ever ON calls (alarm_ever, created_at);
CREATE INDEX ix_calls_application ON calls (application_id);

CREATE TABLE decision_policy_versions (
	id SERIAL NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	version INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	content JSON NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	note TEXT NOT NULL, 
	expected_effect JSON, 
	created_by VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	activated_by VARCHAR(200), 
	activated_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_policy_version UNIQUE (name, version)
);
CREATE INDEX ix_policy_status ON decision_policy_versions (name, status);

CREATE TABLE decision_records (
	decision_id VARCHAR(32) NOT NULL, 
	application_id VARCHAR(64) NOT NULL, 
	decision VARCHAR(32) NOT NULL, 
	credit_limit FLOAT NOT NULL, 
	score FLOAT NOT NULL, 
	reasons JSON NOT NULL, 
	policy_versions JSON NOT NULL, 
	model_version VARCHAR(80) NOT NULL, 
	application JSON NOT NULL, 
	investigation JSON, 
	details JSON, 
	actor VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (decision_id)
);
CREATE INDEX ix_decision_application ON decision_records (application_id);

CREATE TABLE questionnaire_interviews (
	id VARCHAR(36) NOT NULL, 
	application_id VARCHAR(64) NOT NULL, 
	attempt INTEGER NOT NULL, 
	language VARCHAR(8) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	verdict VARCHAR(16), 
	risk_score FLOAT, 
	engine_state JSON NOT NULL, 
	created_by VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_questionnaire_interviews_app ON questionnaire_interviews (application_id, attempt);

CREATE TABLE wf_checks (
	id SERIAL NOT NULL, 
	check_key VARCHAR(200) NOT NULL, 
	instance_id VARCHAR(36) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	rules_checked INTEGER NOT NULL, 
	violations INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (check_key)
);

CREATE TABLE wf_config (
	key VARCHAR(64) NOT NULL, 
	value JSON NOT NULL, 
	version INTEGER NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_by VARCHAR(200) NOT NULL, 
	PRIMARY KEY (key)
);

CREATE TABLE wf_definitions (
	id SERIAL NOT NULL, 
	process_key VARCHAR(100) NOT NULL, 
	version INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	xml TEXT NOT NULL, 
	meta JSON NOT NULL, 
	active BOOLEAN NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	created_by VARCHAR(200) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_wf_def_version UNIQUE (process_key, version)
);

CREATE TABLE wf_effects (
	effect_key VARCHAR(200) NOT NULL, 
	instance_id VARCHAR(36) NOT NULL, 
	handler VARCHAR(100) NOT NULL, 
	result JSON, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (effect_key)
);
CREATE INDEX ix_wf_effects_inst ON wf_effects (instance_id);

CREATE TABLE wf_events (
	id SERIAL NOT NULL, 
	instance_id VARCHAR(36) NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	element VARCHAR(200) NOT NULL, 
	details JSON, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_wf_events_inst ON wf_events (instance_id, id);

CREATE TABLE wf_findings (
	id SERIAL NOT NULL, 
	check_key VARCHAR(200) NOT NULL, 
	instance_id VARCHAR(36) NOT NULL, 
	rule_id VARCHAR(32) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	title VARCHAR(300) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	due_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	rectified_at TIMESTAMP WITH TIME ZONE, 
	rectified_by VARCHAR(200), 
	note TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_wf_finding UNIQUE (check_key, rule_id)
);
CREATE INDEX ix_wf_findings_status ON wf_findings (status, due_at);

CREATE TABLE wf_issuances (
	id SERIAL NOT NULL, 
	effect_key VARCHAR(200) NOT NULL, 
	instance_id VARCHAR(36) NOT NULL, 
	application_id VARCHAR(64), 
	product VARCHAR(100), 
	kind VARCHAR(32) NOT NULL, 
	amount FLOAT, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (effect_key)
);

CREATE TABLE wf_tasks (
	task_id VARCHAR(36) NOT NULL, 
	instance_id VARCHAR(36) NOT NULL, 
	element VARCHAR(200) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	skill VARCHAR(64), 
	supervise VARCHAR(32), 
	priority FLOAT NOT NULL, 
	amount FLOAT, 
	risk_score FLOAT, 
	due_at TIMESTAMP WITH TIME ZONE, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	assignee VARCHAR(100), 
	assigned_at TIMESTAMP WITH TIME ZONE, 
	status VARCHAR(16) NOT NULL, 
	completed_at TIMESTAMP WITH TIME ZONE, 
	completed_by VARCHAR(200), 
	reminded_at TIMESTAMP WITH TIME ZONE, 
	escalated_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (task_id)
);
CREATE INDEX ix_wf_tasks_assignee ON wf_tasks (assignee, status);
CREATE INDEX ix_wf_tasks_inst ON wf_tasks (instance_id);
CREATE INDEX ix_wf_tasks_open ON wf_tasks (status, role);

CREATE TABLE wf_users (
	user_id VARCHAR(100) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	role VARCHAR(32) NOT NULL, 
	skills JSON NOT NULL, 
	max_amount FLOAT, 
	active BOOLEAN NOT NULL, 
	PRIMARY KEY (user_id)
);

CREATE TABLE blacklist_samples (
	id SERIAL NOT NULL, 
	identity_id INTEGER NOT NULL, 
	backend_id VARCHAR(200) NOT NULL, 
	dim INTEGER NOT NULL, 
	vector BYTEA NOT NULL, 
	stats_mean FLOAT NOT NULL, 
	stats_std FLOAT NOT NULL, 
	net_speech_s FLOAT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	created_by VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(identity_id) REFERENCES blacklist_identities (id) ON DELETE CASCADE
);
CREATE INDEX ix_blacklist_samples_backend ON blacklist_samples (backend_id, id);
CREATE INDEX ix_blacklist_samples_identity ON blacklist_samples (identity_id);
CREATE INDEX ix_blacklist_samples_sha ON blacklist_samples (sha256);

CREATE TABLE call_events (
	id SERIAL NOT NULL, 
	call_id VARCHAR(32) NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	t_s FLOAT, 
	kind VARCHAR(32) NOT NULL, 
	data JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(call_id) REFERENCES calls (id) ON DELETE CASCADE
);
CREATE INDEX ix_call_events_call ON call_events (call_id, id);

CREATE TABLE questionnaire_answers (
	id SERIAL NOT NULL, 
	interview_id VARCHAR(36) NOT NULL, 
	seq INTEGER NOT NULL, 
	question_id VARCHAR(64) NOT NULL, 
	question JSON NOT NULL, 
	transcript TEXT NOT NULL, 
	timing JSON, 
	prosody JSON, 
	assessment JSON NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(interview_id) REFERENCES questionnaire_interviews (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX ix_questionnaire_answers_interview ON questionnaire_answers (interview_id, seq);

CREATE TABLE wf_instances (
	id VARCHAR(36) NOT NULL, 
	definition_id INTEGER NOT NULL, 
	process_key VARCHAR(100) NOT NULL, 
	version INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	state TEXT NOT NULL, 
	data JSON NOT NULL, 
	subject VARCHAR(64), 
	rev INTEGER NOT NULL, 
	error TEXT, 
	next_timer_at TIMESTAMP WITH TIME ZONE, 
	created_by VARCHAR(200) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(definition_id) REFERENCES wf_definitions (id)
);
CREATE INDEX ix_wf_inst_status ON wf_instances (status);
CREATE INDEX ix_wf_inst_subject ON wf_instances (subject, created_at);
CREATE INDEX ix_wf_inst_timer ON wf_instances (next_timer_at);
