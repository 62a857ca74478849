"""Room calls: signalling per room call over a WebSocket, rules from the one permission matrix, and the Janus
VideoRoom adapter. Media never passes here: browsers send and receive it with Janus directly."""
