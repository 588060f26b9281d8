package dev.prestop.lab.consumer;

import java.io.InterruptedIOException;
import java.net.ConnectException;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.net.http.HttpTimeoutException;
import java.util.Locale;

import org.springframework.web.client.HttpServerErrorException;

/** How one request ended, as the lab driver names it. */
public enum Outcome {
    OK("ok"), REFUSED("refused"), RESET("reset"), TIMEOUT("timeout"),
    STATUS_5XX("status_5xx"), NO_INSTANCE("no_instance"), OTHER("other");

    private final String label;

    Outcome(String label) {
        this.label = label;
    }

    public String label() {
        return label;
    }

    /**
     * Names the failure from the exception's cause chain. The HTTP client wraps the
     * socket error (RestClient in ResourceAccessException, Apache HttpClient in its
     * own types), so look at every cause, not just the outermost.
     */
    public static Outcome of(Throwable error) {
        if (error instanceof HttpServerErrorException) {
            return STATUS_5XX;
        }
        for (Throwable t = error; t != null; t = t.getCause()) {
            if (t instanceof ConnectException) {
                // Includes Apache's HttpHostConnectException; a connect *timeout* says so.
                return isTimeoutMessage(t) ? TIMEOUT : REFUSED;
            }
            if (t instanceof SocketTimeoutException || t instanceof HttpTimeoutException
                    || t instanceof InterruptedIOException && isTimeoutMessage(t)) {
                return TIMEOUT;
            }
            String name = t.getClass().getSimpleName();
            String message = String.valueOf(t.getMessage()).toLowerCase(Locale.ROOT);
            // A pooled keep-alive connection that the server closed, or a reset:
            // Apache says NoHttpResponseException, the JDK "Connection reset" / EOF.
            if (name.equals("NoHttpResponseException") || name.equals("ConnectionClosedException")
                    || (t instanceof SocketException && (message.contains("reset") || message.contains("broken pipe")))
                    || message.contains("connection reset") || message.contains("unexpected end of file")
                    || message.contains("failed to respond")) {
                return RESET;
            }
        }
        return OTHER;
    }

    private static boolean isTimeoutMessage(Throwable t) {
        return String.valueOf(t.getMessage()).toLowerCase(Locale.ROOT).contains("timed out");
    }
}
