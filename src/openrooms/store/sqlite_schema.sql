-- migrations: 0001_rooms.py 0002_identities.py 0003_access_keys.py 0004_roster_order.py 0005_create_records_keep_the_room.py 0006_events.py 0007_calls.py 0008_room_queries.py 0009_call_events_in_the_log.py 0010_window_clock.py 0011_room_queries_covering.py 0012_webhooks.py 0013_console_sessions.py 0014_roster_room_copies.py 0015_webhook_subscription_leases.py 0016_webhook_pending_deliveries.py 0017_webhook_batches.py
CREATE TABLE access_keys (
	name VARCHAR(16) NOT NULL, 
	"key" TEXT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (name)
);
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0017');
CREATE TABLE call_servers (
	room_id VARCHAR(32) NOT NULL, 
	server TEXT NOT NULL, 
	janus_room BIGINT NOT NULL, 
	secret TEXT NOT NULL, 
	pin TEXT NOT NULL, 
	server_call_id VARCHAR(64) NOT NULL, 
	started_at BIGINT NOT NULL, started_by TEXT DEFAULT '' NOT NULL, started_by_role VARCHAR(16) DEFAULT '' NOT NULL, correlation_id VARCHAR(64) DEFAULT '' NOT NULL, 
	PRIMARY KEY (room_id)
);
CREATE TABLE console_sessions (
	token_hash VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	principal TEXT NOT NULL, 
	key_id VARCHAR(64), 
	created_at BIGINT NOT NULL, 
	expires_at BIGINT NOT NULL, 
	PRIMARY KEY (token_hash)
);
CREATE TABLE console_sign_in_failures (
	client TEXT NOT NULL, 
	window_start BIGINT NOT NULL, 
	failures INTEGER NOT NULL, 
	PRIMARY KEY (client)
);
CREATE TABLE create_requests (
	request_id VARCHAR(128) NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	room_id VARCHAR(20) NOT NULL, 
	created_room BLOB NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (request_id)
);
CREATE TABLE events (
	seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	type TEXT NOT NULL, 
	subject TEXT NOT NULL, 
	room_id TEXT, 
	time BIGINT NOT NULL, 
	data TEXT NOT NULL
);
CREATE TABLE identities (
	raw_id VARCHAR(256) NOT NULL, 
	created_at BIGINT NOT NULL, 
	tokens_revoked_before BIGINT, 
	PRIMARY KEY (raw_id)
)
 WITHOUT ROWID

;
CREATE TABLE participants (
	room_id VARCHAR(20) NOT NULL, 
	raw_id VARCHAR(256) NOT NULL, 
	role VARCHAR(16) NOT NULL, seq BIGINT DEFAULT '0' NOT NULL, created_at BIGINT DEFAULT '0' NOT NULL, valid_from BIGINT DEFAULT '0' NOT NULL, valid_until BIGINT DEFAULT '0' NOT NULL, pstn_dial_out_enabled BOOLEAN DEFAULT 0 NOT NULL, 
	PRIMARY KEY (room_id, raw_id), 
	FOREIGN KEY(room_id) REFERENCES rooms (id) ON DELETE CASCADE
)
 WITHOUT ROWID

;
CREATE TABLE room_ids (
	id VARCHAR(20) NOT NULL, 
	PRIMARY KEY (id)
)
 WITHOUT ROWID

;
CREATE TABLE rooms (
	id VARCHAR(20) NOT NULL, 
	created_at BIGINT NOT NULL, 
	valid_from BIGINT NOT NULL, 
	valid_until BIGINT NOT NULL, 
	pstn_dial_out_enabled BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE server_settings (
	name VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (name)
);
CREATE TABLE signing_keys (
	kid VARCHAR(64) NOT NULL, 
	private_key_pem TEXT NOT NULL, 
	certificate_pem TEXT NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (kid)
);
CREATE TABLE webhook_deliveries (
	seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	subscription_id VARCHAR(36) NOT NULL, 
	room_key TEXT NOT NULL, 
	event_tx BIGINT NOT NULL, 
	event_seq BIGINT NOT NULL, 
	type TEXT NOT NULL, 
	subject TEXT NOT NULL, 
	time BIGINT NOT NULL, 
	data TEXT NOT NULL, 
	state VARCHAR(8) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at BIGINT NOT NULL, 
	enqueued_at BIGINT NOT NULL, 
	last_error TEXT, 
	dead_at BIGINT, 
	CONSTRAINT webhook_deliveries_once UNIQUE (subscription_id, event_tx, event_seq), 
	FOREIGN KEY(subscription_id) REFERENCES webhook_subscriptions (id) ON DELETE CASCADE
);
CREATE TABLE webhook_queues (
	subscription_id VARCHAR(36) NOT NULL, 
	room_key TEXT NOT NULL, 
	next_attempt_at BIGINT, 
	owner TEXT, 
	expires_at BIGINT NOT NULL, 
	PRIMARY KEY (subscription_id, room_key), 
	FOREIGN KEY(subscription_id) REFERENCES webhook_subscriptions (id) ON DELETE CASCADE
);
CREATE TABLE webhook_subscriptions (
	id VARCHAR(36) NOT NULL, 
	endpoint TEXT NOT NULL, 
	types TEXT, 
	room_id TEXT, 
	event_schema VARCHAR(32) NOT NULL, 
	secret TEXT NOT NULL, 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	cursor_tx BIGINT NOT NULL, 
	cursor_seq BIGINT NOT NULL, 
	last_success_at BIGINT, 
	consecutive_failures INTEGER DEFAULT '0' NOT NULL, owner TEXT, expires_at BIGINT DEFAULT '0' NOT NULL, max_events_per_batch INTEGER DEFAULT '1' NOT NULL, preferred_batch_kilobytes INTEGER DEFAULT '64' NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE window_clock (
	id INTEGER NOT NULL, 
	covered BIGINT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX rooms_by_created ON rooms (created_at, id);
CREATE INDEX rooms_by_valid_until ON rooms (valid_until);
CREATE INDEX create_requests_by_created ON create_requests (created_at);
CREATE INDEX participants_by_seq ON participants (room_id, seq, role);
CREATE INDEX rooms_by_valid_from_ahead ON rooms (valid_from) WHERE valid_from > created_at;
CREATE INDEX rooms_by_valid_from ON rooms (valid_from, id, valid_until, created_at, pstn_dial_out_enabled);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (subscription_id, room_key, state, seq);
CREATE INDEX webhook_queues_due ON webhook_queues (next_attempt_at);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sign_in_failures_window ON console_sign_in_failures (window_start);
CREATE INDEX participants_rooms_by_valid_from ON participants (raw_id, valid_from, room_id, valid_until, created_at, pstn_dial_out_enabled);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscription_id, room_key, state, seq) WHERE state = 'pending';
DELETE FROM "sqlite_sequence";
