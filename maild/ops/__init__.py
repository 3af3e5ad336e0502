"""What operators read: the queue, a ticket's story, statistics, the digest and the health verdict."""
